"""WeCom application messages from the outbox: :class:`WeComSender` and error mapping.

The sender renders a payload (:mod:`.rendering`), posts it to one member with the
synchronous wechatpy client in a worker thread, refreshes a rejected access token once,
and maps WeCom's answers to the outbox's outcomes: a recipient WeCom does not know is a
permanent failure, a busy or unreachable API a retry, a message sent but not answered in
time ``SendTimedOut`` (it may have arrived: the worker resends it once), and a
configuration WeCom refuses (corpid, agentid, Secret, IP whitelist) a retry after a longer
wait, with a reason that says to check the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException

from bot.channels.wecom.client import TokenFetchError, WeComApiClient
from bot.channels.wecom.config import WeComConfig
from bot.channels.wecom.rendering import TextCard, TextMessage, render
from handoff.outbox import PermanentFailure, RetryLater, SendTimedOut

__all__ = ["CHECK_CONFIG", "WeComSender", "problem_of"]

log = logging.getLogger("yxby.wecom")

CHECK_CONFIG = "请检查企业微信配置"

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential / token, token expired
_UNKNOWN_USER = {
    40031: "不合法的成员列表",
    60111: "成员不存在",
    81013: "成员不在应用可见范围内或不存在",
}
_TRANSIENT_ERRORS = frozenset({-1, 45009, 45033})  # busy, API rate, concurrent call limit
_CONFIG_ERRORS = frozenset(
    {
        40013,  # invalid corpid
        40056,  # invalid agentid
        40091,  # invalid Secret
        41004,  # Secret missing
        48002,  # API forbidden for this application
        60020,  # server IP not in the application's trusted IPs (企业可信IP)
        301002,  # no permission for the agent
    }
)
_USERID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
"""A member's UserID as WeCom allows it: letters, digits and ``_-@.``, 1 to 64 bytes."""


def problem_of(errcode: int | None, errmsg: str, *, config_retry: float) -> Exception:
    """The outbox outcome of a WeCom error code (``None``: an HTTP error status)."""
    if errcode is None:
        return RetryLater(f"企业微信接口 HTTP 错误：{errmsg}")
    detail = f"企业微信接口错误 {errcode}：{errmsg}"
    if errcode in _UNKNOWN_USER:
        return PermanentFailure(f"无效的企业微信成员：{_UNKNOWN_USER[errcode]}（{errcode}）")
    if errcode in _TRANSIENT_ERRORS or errcode in TOKEN_ERRORS:
        return RetryLater(detail)
    if errcode in _CONFIG_ERRORS:
        return RetryLater(f"{detail}（{CHECK_CONFIG}）", after=config_retry)
    return PermanentFailure(detail)


class WeComSender:
    """Sends outbox payloads as application messages (the ``Sender`` of channel ``wecom``)."""

    def __init__(self, client: WeComApiClient, config: WeComConfig) -> None:
        self.client = client
        self.config = config

    async def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Deliver *payload* to the member *recipient* (a WeCom userid), or raise how to go on."""
        if not _USERID.match(recipient):
            # "|" would address several members at once: never pass such a value on
            raise PermanentFailure(f"无效的企业微信成员账号：{recipient!r}")
        message = render(payload, self.config.console_url)
        await asyncio.to_thread(self._post, recipient, message)

    def _call(self, recipient: str, message: TextCard | TextMessage) -> dict[str, Any]:
        agent = self.config.agent_id
        if isinstance(message, TextCard):
            result: dict[str, Any] = self.client.message.send_text_card(
                agent, [recipient], message.title, message.description, message.url, message.btntxt
            )
        else:
            result = self.client.message.send_text(agent, [recipient], message.content)
        return result

    def _post(self, recipient: str, message: TextCard | TextMessage) -> None:
        retry = self.config.config_retry_seconds
        try:
            try:
                result = self._call(recipient, message)
            except WeChatClientException as exc:
                if exc.errcode not in TOKEN_ERRORS:
                    raise
                log.info("wecom: access token rejected (%s): fetching a new one", exc.errcode)
                self.client.fetch_access_token()
                result = self._call(recipient, message)
        except TokenFetchError as exc:
            if exc.errcode is None:
                raise RetryLater(
                    f"企业微信接口不可达：{exc.errmsg}（获取 access_token 时）"
                ) from exc
            if exc.errcode in _TRANSIENT_ERRORS:
                raise problem_of(exc.errcode, exc.errmsg, config_retry=retry) from exc
            raise RetryLater(
                f"企业微信 access_token 获取失败 {exc.errcode}：{exc.errmsg}（{CHECK_CONFIG}）",
                after=retry,
            ) from exc
        except WeChatClientException as exc:
            raise problem_of(exc.errcode, str(exc.errmsg or exc), config_retry=retry) from exc
        except requests.ReadTimeout as exc:  # the message went out: it may have arrived
            timeout = self.config.http_timeout
            raise SendTimedOut(f"企业微信接口 {timeout:g} 秒无应答") from exc
        except requests.RequestException as exc:
            raise RetryLater(f"企业微信接口不可达：{type(exc).__name__}") from exc
        invalid = str(result.get("invaliduser") or "").split("|")
        if recipient in invalid:  # WeCom accepted the call but not this member
            raise PermanentFailure("无效的企业微信成员：成员不在应用可见范围内或不存在")
