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
outbox instead — then every retry also gets ``success``.

A passive text reply holds 2,048 bytes: a longer answer is cut, ends with a prompt to reply
"全文", and "全文" returns the rest (kept in memory per user for a while).

Customer-service pushes (:class:`WeChatSender`, used by the outbox worker) follow WeChat's
rules: only within 48 hours of the user's last message and at most 5 per user message;
anything outside is held ("未送达，等待企业再次发消息") and released when the user writes
again. The synchronous wechatpy client runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree.ElementTree import Element

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from wechatpy import parse_message
from wechatpy.client import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import (
    InvalidAppIdException,
    InvalidSignatureException,
    WeChatClientException,
)
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.app import App
from bot.types import Channel, Engine, Incoming, MessageKind, Reply, reply_from_payload
from handoff.inbox import Inbox, PushWindow
from handoff.outbox import HoldForUser, PermanentFailure, RetryLater
from yxby.errors import ConfigError

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

log = logging.getLogger("yxby.wechat")

CHANNEL = Channel.WECHAT.value
DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_MENU: Mapping[str, str] = {"FAQ": "菜单", "MY_TICKETS": "查询", "HUMAN": "转人工"}
"""Custom-menu ``CLICK`` keys and the dialogue command each one sends."""
PASSIVE_LIMIT_BYTES = 2048
"""What a text message may hold (UTF-8 bytes of ``Content``)."""
FULL_TEXT_COMMAND = "全文"
SIGNATURE_MAX_AGE = 300
"""Seconds a signed request's timestamp may differ from now (replays of old URLs fail)."""
MORE_PROMPT = "……\n回复“全文”查看完整内容"
HOLD_REASON = "未送达，等待企业再次发消息"
SUCCESS = "success"
"""WeChat's "received, no reply" answer (valid in every mode)."""

_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_OPENID = re.compile(r"[A-Za-z0-9_-]{1,100}")


# ----------------------------------------------------------------------------- configuration


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


def wechat_adapter_from_env(app: App, env: Mapping[str, str]) -> WeChatAdapter:
    """The WeChat adapter configured from ``YXBY_WECHAT_*`` variables in *env*."""
    return WeChatAdapter(app, wechat_config_from_env(env))


# ----------------------------------------------------------------------------- text limits


def fit_passive(text: str, limit: int = PASSIVE_LIMIT_BYTES) -> tuple[str, str]:
    """*text* cut to *limit* UTF-8 bytes, and the rest ("" when all of it fits).

    A cut text ends with :data:`MORE_PROMPT`; the cut falls on a line break when one is in
    the second half of what fits.
    """
    if len(text.encode()) <= limit:
        return text, ""
    room = limit - len(MORE_PROMPT.encode()) - 1
    used = cut = 0
    for i, char in enumerate(text):
        used += len(char.encode())
        if used > room:
            break
        cut = i + 1
    newline = text.rfind("\n", 0, cut)
    if newline >= cut // 2:
        cut = newline
    return text[:cut].rstrip() + "\n" + MORE_PROMPT, text[cut:].lstrip()


def _render(replies: Sequence[Reply]) -> str:
    return "\n\n".join(p for p in (r.render_plain() for r in replies) if p)


class _Continuations:
    """The unsent rest of long answers, per user, until "全文" or the TTL (this process only)."""

    def __init__(self, ttl: timedelta, clock: Callable[[], datetime], limit: int = 10_000) -> None:
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
        self._rest: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, user: str, rest: str) -> None:
        with self._lock:
            self._rest.pop(user, None)
            if rest:
                self._rest[user] = (rest, self.clock())
                while len(self._rest) > self.limit:
                    self._rest.popitem(last=False)

    def take(self, user: str) -> str | None:
        with self._lock:
            item = self._rest.pop(user, None)
        if item is None or self.clock() - item[1] > self.ttl:
            return None
        return item[0]


# ----------------------------------------------------------------------------- API client


class _TimeoutSession(requests.Session):
    """A requests session with a default timeout (wechatpy's token fetch passes none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class WeChatApiClient(WeChatClient):
    """wechatpy's client pointed at *api_base* — the access-token URL too — with timeouts.

    wechatpy's own retry on an expired token is off (it retries without end); the sender
    refreshes the token and retries once itself.
    """

    def __init__(
        self, appid: str, secret: str, *, api_base: str = DEFAULT_API_BASE, timeout: float = 10.0
    ) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        base = api_base.rstrip("/")
        if not base.endswith("/cgi-bin"):
            base += "/cgi-bin"
        self.API_BASE_URL = base + "/"
        self._http = _TimeoutSession(timeout)
        self._token_lock = threading.Lock()

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a new access token from ``{api_base}/cgi-bin/token`` (stored by wechatpy)."""
        with self._token_lock:
            result: dict[str, Any] = self._fetch_access_token(
                url=self.API_BASE_URL + "token",
                params={
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret,
                },
            )
            return result

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()


# ----------------------------------------------------------------------------- pushes

_TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid / expired access token
_WINDOW_ERRORS = frozenset({45015, 45047})  # outside the 48 h window / too many messages
_GONE_ERRORS = {
    40003: "无效的 OpenID",
    43004: "用户未关注公众号",
    43019: "用户已被拉黑",
}
_TRANSIENT_ERRORS = frozenset({-1, 45009, 45011, 45033})  # busy, quota, rate limits
_CONFIG_ERRORS = frozenset({40002, 40013, 40125, 40164, 41002, 41004, 48001, 61024})


def _problem(exc: WeChatClientException) -> Exception:
    code = exc.errcode
    detail = f"微信接口错误 {code}：{exc.errmsg}"
    if code is None:
        return RetryLater(f"微信接口 HTTP 错误：{exc.errmsg or exc}")
    if code in _WINDOW_ERRORS:
        return HoldForUser(HOLD_REASON)
    if code in _GONE_ERRORS:
        return PermanentFailure(f"{_GONE_ERRORS[code]}（{code}）")
    if code in _TOKEN_ERRORS or code in _TRANSIENT_ERRORS:
        return RetryLater(detail)
    if code in _CONFIG_ERRORS:  # an operator can fix it: keep the message a while
        return RetryLater(detail + "（请检查公众号配置）", after=300.0)
    return PermanentFailure(detail)


class WeChatSender:
    """Sends outbox payloads as customer-service text messages (``Sender`` for ``wechat``)."""

    def __init__(
        self,
        client: WeChatApiClient,
        inbox: Inbox,
        continuations: _Continuations,
        *,
        window: timedelta = timedelta(hours=48),
        per_message: int = 5,
    ) -> None:
        self.client = client
        self.inbox = inbox
        self.continuations = continuations
        self.window = window
        self.per_message = per_message

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Deliver *payload* to the user *recipient* (an openid), or raise how to go on."""
        state = await asyncio.to_thread(
            self.inbox.window, CHANNEL, recipient, length=self.window, per_message=self.per_message
        )
        if state is PushWindow.UNSUBSCRIBED:
            raise PermanentFailure("用户已取消关注公众号")
        if state is PushWindow.CLOSED:
            raise HoldForUser(HOLD_REASON)
        head, rest = fit_passive(reply_from_payload(payload).render_plain())
        await asyncio.to_thread(self._post, recipient, head)
        self.continuations.put(recipient, rest)  # an empty rest clears an older answer's

    def _post(self, recipient: str, text: str) -> None:
        try:
            try:
                self.client.message.send_text(recipient, text)
            except WeChatClientException as exc:
                if exc.errcode not in _TOKEN_ERRORS:
                    raise
                log.info("access token rejected (%s): fetching a new one", exc.errcode)
                self.client.fetch_access_token()
                self.client.message.send_text(recipient, text)
        except WeChatClientException as exc:
            raise _problem(exc) from exc
        except requests.RequestException as exc:
            raise RetryLater(f"微信接口不可达：{type(exc).__name__}") from exc


# ----------------------------------------------------------------------------- webhook


class _BadRequest(Exception):
    """The request is not a usable WeChat message (answered 400)."""


class _Forbidden(Exception):
    """The request is not from WeChat (answered 403)."""


def _safe_root(data: bytes) -> Element:
    """The parsed XML, refusing DTDs (so entity declarations) and anything malformed."""
    try:
        root: Element = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise _BadRequest(f"malformed XML: {type(exc).__name__}") from exc
    if root.tag != "xml":
        raise _BadRequest(f"unexpected root element {root.tag!r}")
    return root


@dataclass(frozen=True)
class _Parsed:
    message: Any  # a wechatpy message or event
    root: Element
    encrypted: bool


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
            parsed = self._parse(request, body)
            incoming = self._incoming(parsed)
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

    def _parse(self, request: Request, body: bytes) -> _Parsed:
        root = _safe_root(body)
        aes = request.query_params.get("encrypt_type", "raw").lower() == "aes"
        if self.crypto is not None and not aes:
            raise _Forbidden("plain request while an AES key is configured")
        if aes and self.crypto is not None:
            encrypt = root.findtext("Encrypt")
            if not encrypt:
                raise _BadRequest("no Encrypt element")
            q = request.query_params
            try:
                plain = self.crypto.decrypt_message(
                    {"Encrypt": encrypt},
                    q.get("msg_signature", ""),
                    q.get("timestamp", ""),
                    q.get("nonce", ""),
                )
            except (InvalidSignatureException, InvalidAppIdException) as exc:
                raise _Forbidden(type(exc).__name__) from exc
            except Exception as exc:  # undecryptable input: wechatpy has no error type for it
                raise _BadRequest(f"cannot decrypt: {type(exc).__name__}") from exc
            data = plain.encode() if isinstance(plain, str) else bytes(plain)
            root = _safe_root(data)
        elif aes and root.find("MsgType") is None:
            raise _BadRequest("safe-mode message but YXBY_WECHAT_AES_KEY is not set")
        else:
            data = body
        try:
            message = parse_message(data.decode())
            _ = (message.source, message.time, message.id)  # typed fields parse lazily
        except Exception as exc:  # wechatpy raises KeyError/TypeError/ValueError on odd XML
            raise _BadRequest(f"unparseable message: {type(exc).__name__}") from exc
        return _Parsed(message, root, aes and self.crypto is not None)

    def _incoming(self, parsed: _Parsed) -> Incoming | None:
        message, root = parsed.message, parsed.root
        user = message.source
        if not isinstance(user, str) or not _OPENID.fullmatch(user):
            raise _BadRequest("no usable FromUserName")
        created = int(message.time or 0)
        try:
            at = datetime.fromtimestamp(created, UTC) if created > 0 else None
        except (OverflowError, OSError, ValueError):
            at = None
        common: dict[str, Any] = {
            "channel": CHANNEL,
            "user_key": user,
            # scoped to the sender: a MsgId replayed under another user is another message
            "msg_id": f"{user}:{message.id}" if message.id else f"{user}:{created}",
            "at": at,
        }
        kind = (root.findtext("MsgType") or "").strip().lower()
        if kind == "text":
            return Incoming(text=_str(message.content), **common)
        if kind == "voice":
            recognised = _str(message.recognition).strip()
            return Incoming(text=recognised, kind=MessageKind.VOICE, **common)
        if kind == "image":
            extra = {"media_id": _str(message.media_id), "pic_url": _str(message.image)}
            return Incoming(kind=MessageKind.IMAGE, extra=extra, **common)
        if kind == "location":
            extra = {
                "label": _str(message.label),
                "lat": _str(message.location_x),
                "lng": _str(message.location_y),
            }
            return Incoming(kind=MessageKind.LOCATION, extra=extra, **common)
        if kind == "event":
            return self._event(root, common)
        if kind:  # file, video, shortvideo, link, miniprogrampage …: not text
            return Incoming(kind=MessageKind.FILE, extra={"type": kind}, **common)
        raise _BadRequest("no MsgType")

    def _event(self, root: Element, common: dict[str, Any]) -> Incoming | None:
        event = (root.findtext("Event") or "").strip().lower()
        key = (root.findtext("EventKey") or "").strip()
        if event == "subscribe":
            return Incoming(kind=MessageKind.SUBSCRIBE, payload=key or None, **common)
        if event == "unsubscribe":
            return Incoming(kind=MessageKind.UNSUBSCRIBE, **common)
        if event == "click":
            command = self.config.menu.get(key)
            if command is None:
                log.warning("wechat: menu key %r has no command; showing the menu", key)
                command = DEFAULT_MENU["FAQ"]
            return Incoming(text=command, extra={"menu_key": key}, **common)
        return None  # VIEW, SCAN, LOCATION reports, job notices: nothing to say

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


def _cdata_safe(text: str) -> str:
    """*text* for wechatpy's CDATA sections: no characters XML forbids, ``]]>`` split."""
    return _NOT_XML_CHARS.sub("", text).replace("]]>", "]]]]><![CDATA[>")


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
