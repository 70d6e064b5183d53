"""The WeChat API side: :class:`WeChatApiClient` and pushes (the sender).

The client is wechatpy's, pointed at a configurable API base with a default timeout on every
HTTP call. The sender checks the 48-hour push window first: inside it a push is a
customer-service text message; outside it a ticket notice (a payload with a ``notice``) goes
out as a template message linking to the ticket page when a template is configured, and
anything else is held until the user writes again. WeChat's error codes map to the outbox's
outcomes (hold for the user, retry later, permanent failure); the synchronous wechatpy calls
run in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import requests
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.channels.http import TimeoutSession, cgi_bin
from bot.channels.wechat.config import CHANNEL, DEFAULT_API_BASE, WeChatConfig, WeChatTemplates
from bot.channels.wechat.passive import _Continuations, fit_passive
from bot.types import reply_from_payload
from handoff.inbox import Inbox, PushWindow
from handoff.outbox import HoldForUser, PermanentFailure, RetryLater, SendTimedOut
from handoff.shared_state import SharedState, WeChatSessionStorage

__all__ = ["HOLD_REASON", "WeChatApiClient", "WeChatSender"]

log = logging.getLogger("yxby.wechat")

HOLD_REASON = "未送达，等待企业再次发消息"


TOKEN_FETCH_LEASE = 30.0
"""Seconds one process may take to fetch the access token before another may try."""
TOKEN_FETCH_WAIT = 10.0
"""Seconds a process waits for another's fetch before fetching itself."""
_POLL = 0.05


class WeChatApiClient(WeChatClient):
    """wechatpy's client pointed at *api_base* — the access-token URL too — with timeouts.

    wechatpy's own retry on an expired token is off (it retries without end); the sender
    refreshes the token and retries once itself. With *shared* (``App.shared``) the token
    lives there, not in this process: every server process uses the one token, one process
    fetches it (under a lease) while the others wait for it, and it is fetched again five
    minutes before WeChat would expire it.
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 20.0,
        connect_timeout: float = 5.0,
        shared: SharedState | None = None,
    ) -> None:
        # (connect, read): a line that is down fails fast; a slow answer is waited for,
        # since giving up on a send that WeChat then completes means sending it twice
        limits: Any = (min(connect_timeout, timeout), timeout)
        session = WeChatSessionStorage(shared) if shared is not None else None
        super().__init__(appid, secret, session=session, timeout=limits, auto_retry=False)
        self.shared = shared
        self.API_BASE_URL = cgi_bin(api_base)
        self._http = TimeoutSession(limits)
        self._token_lock = threading.Lock()

    @property
    def access_token(self) -> str:
        """The current token (shared by every process), fetched when there is none."""
        if self.shared is None:  # wechatpy's own: in memory, refreshed a minute before expiry
            return str(WeChatClient.access_token.fget(self))
        token = self.session.get(self.access_token_key)
        if token:
            return str(token)
        self.refresh_access_token(None)
        return str(self.session.get(self.access_token_key) or "")

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a new access token from ``{api_base}/cgi-bin/token`` (stored by wechatpy)."""
        with self._token_lock:
            return self._fetch_now()

    def refresh_access_token(self, rejected: str | None) -> None:
        """Make sure a token other than *rejected* is stored, fetching at most once for all
        processes: whoever holds the fetch lease fetches; the others wait for its token."""
        with self._token_lock:
            if self._has_token_besides(rejected):
                return
            if self.shared is None:
                self._fetch_now()
                return
            lease = f"wechat:token-fetch:{self.appid}"
            deadline = time.monotonic() + TOKEN_FETCH_WAIT
            while True:
                if self.shared.add(lease, str(os.getpid()), TOKEN_FETCH_LEASE):
                    try:
                        if not self._has_token_besides(rejected):
                            self._fetch_now()
                    finally:
                        self.shared.delete(lease)
                    return
                time.sleep(_POLL)
                if self._has_token_besides(rejected):
                    return
                if time.monotonic() > deadline:  # the fetching process is stuck: fetch here
                    self._fetch_now()
                    return

    def _has_token_besides(self, rejected: str | None) -> bool:
        token = self.session.get(self.access_token_key)
        return bool(token) and token != rejected

    def _fetch_now(self) -> dict[str, Any]:
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
_CONFIG_ERRORS = frozenset(
    {40002, 40013, 40125, 40164, 41002, 41004, 48001, 61024, 40037}  # 40037: bad template id
)


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
    """Sends outbox payloads to WeChat users (``Sender`` for ``wechat``).

    Customer-service text messages inside the 48-hour window; outside it, template messages
    for ticket notices when *templates* has one for the notice's event, else a hold. A
    notice to enterprises (``payload["outreach"]``) goes as a template message whenever
    *templates* has one for notices, else by the same window rule.
    """

    def __init__(
        self,
        client: WeChatApiClient,
        inbox: Inbox,
        continuations: _Continuations,
        *,
        window: timedelta = timedelta(hours=48),
        per_message: int = 5,
        templates: WeChatTemplates | None = None,
    ) -> None:
        self.client = client
        self.inbox = inbox
        self.continuations = continuations
        self.window = window
        self.per_message = per_message
        self.templates = templates

    @classmethod
    def for_config(
        cls,
        client: WeChatApiClient,
        inbox: Inbox,
        continuations: _Continuations,
        config: WeChatConfig,
    ) -> WeChatSender:
        """The sender with *config*'s window, push limit and templates."""
        return cls(
            client,
            inbox,
            continuations,
            window=config.window,
            per_message=config.pushes_per_message,
            templates=config.templates,
        )

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Deliver *payload* to the user *recipient* (an openid), or raise how to go on."""
        state = await asyncio.to_thread(
            self.inbox.window, CHANNEL, recipient, length=self.window, per_message=self.per_message
        )
        if state is PushWindow.UNSUBSCRIBED:
            raise PermanentFailure("用户已取消关注公众号")
        if await self._outreach_template(recipient, payload):
            return
        if state is PushWindow.CLOSED:
            await self._outside_window(recipient, payload)
            return
        head, rest = fit_passive(reply_from_payload(payload).render_plain())
        try:
            await asyncio.to_thread(self._post, recipient, head)
        except HoldForUser:
            # WeChat says the window is closed after all (45015/45047): a notice may still go
            await self._outside_window(recipient, payload)
            return
        self.continuations.put(recipient, rest)  # an empty rest clears an older answer's

    async def _outside_window(self, recipient: str, payload: dict[str, Any]) -> None:
        """A template message for a ticket notice, when one is configured; else hold."""
        notice = payload.get("notice")
        chosen = None
        if isinstance(notice, dict) and self.templates is not None:
            chosen = self.templates.message(notice)
        if chosen is None:
            raise HoldForUser(HOLD_REASON)
        template_id, data = chosen
        link = str(notice.get("link") or "") if isinstance(notice, dict) else ""
        url = link if link.startswith(("https://", "http://")) else None
        await asyncio.to_thread(self._post_template, recipient, template_id, data, url)

    async def _outreach_template(self, recipient: str, payload: dict[str, Any]) -> bool:
        """A notice to enterprises goes as a template message whenever one is configured
        for notices (any window); ``False`` when it is not such a notice or has none."""
        outreach = payload.get("outreach")
        if not isinstance(outreach, dict) or self.templates is None:
            return False
        chosen = self.templates.outreach_message(outreach)
        if chosen is None:
            return False
        template_id, data = chosen
        link = str(outreach.get("link") or "")
        url = link if link.startswith(("https://", "http://")) else None
        await asyncio.to_thread(self._post_template, recipient, template_id, data, url)
        return True

    def _post(self, recipient: str, text: str) -> None:
        self._call(lambda: self.client.message.send_text(recipient, text))

    def _post_template(
        self, recipient: str, template_id: str, data: dict[str, Any], url: str | None
    ) -> None:
        self._call(lambda: self.client.message.send_template(recipient, template_id, data, url=url))

    def _call(self, call: Callable[[], object]) -> None:
        """Make one API call; refresh a rejected token once; map errors to outcomes."""
        try:
            try:
                used = self.client.access_token
                call()
            except WeChatClientException as exc:
                if exc.errcode not in _TOKEN_ERRORS:
                    raise
                log.info("access token rejected (%s): fetching a new one", exc.errcode)
                self.client.refresh_access_token(used)
                call()
        except WeChatClientException as exc:
            raise _problem(exc) from exc
        except requests.ReadTimeout as exc:
            url = str(getattr(exc.request, "url", "") or "")
            if "/message/" in url:  # the message went out; WeChat cannot be asked if it arrived
                raise SendTimedOut("微信接口超时未答复，消息可能已送达") from exc
            raise RetryLater("微信接口超时（获取令牌）") from exc
        except requests.RequestException as exc:
            raise RetryLater(f"微信接口不可达：{type(exc).__name__}") from exc
