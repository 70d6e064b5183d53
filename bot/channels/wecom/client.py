"""The WeCom API client: wechatpy's, pointed at a configurable API base, with timeouts.

``gettoken`` goes to the same base as every other call (tests point it at a fake), every
HTTP call has a timeout, and wechatpy's own retry on a rejected token is off (it retries
without end): the sender refreshes the token and retries once itself. A token that cannot
be fetched raises :class:`TokenFetchError`, so a wrong Secret is not mistaken for an expired
token.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException

try:  # wechatpy 2 calls the package ``work``; 1.8 (pinned) ``enterprise``
    from wechatpy.work import WeChatClient
except ImportError:  # pragma: no cover - depends on the installed wechatpy
    from wechatpy.enterprise import WeChatClient

from bot.channels.http import TimeoutSession, cgi_bin
from bot.channels.wecom.config import DEFAULT_API_BASE
from handoff.shared_state import SharedState, WeChatSessionStorage

__all__ = ["TokenFetchError", "WeComApiClient"]


class TokenFetchError(Exception):
    """``gettoken`` failed: *errcode* is WeCom's (``None`` for an HTTP, network or timeout
    error, *errmsg* then names it)."""

    def __init__(self, errcode: int | None, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeComApiClient(WeChatClient):
    """``wechatpy`` WeCom client on *api_base* (``…/cgi-bin/`` added) with an HTTP timeout.

    With *shared* (``App.shared``) the access token is kept there (wechatpy's session
    storage), so every server process uses the one token until shortly before it expires.
    """

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 5.0,
        shared: SharedState | None = None,
    ) -> None:
        session = WeChatSessionStorage(shared, prefix="wecom:") if shared is not None else None
        super().__init__(corp_id, secret, session=session, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = cgi_bin(api_base)
        self._http = TimeoutSession(timeout)
        self._token_lock = threading.Lock()

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a new access token from ``{api_base}/cgi-bin/gettoken`` (kept by wechatpy)."""
        with self._token_lock:
            try:
                result: dict[str, Any] = self._fetch_access_token(
                    url=self.API_BASE_URL + "gettoken",
                    params={"corpid": self.corp_id, "corpsecret": self.secret},
                )
            except WeChatClientException as exc:
                raise TokenFetchError(exc.errcode, str(exc.errmsg or exc)) from exc
            except requests.RequestException as exc:  # nothing was sent: a plain retry
                raise TokenFetchError(None, type(exc).__name__) from exc
            return result

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()
