"""A fake WeChat API: a real HTTP server on 127.0.0.1, in a thread, that records every call.

It serves what the pushes need — ``GET /cgi-bin/token``, ``POST /cgi-bin/message/custom/send``
and ``POST /cgi-bin/message/template/send`` — with WeChat's JSON answers, and can be told to
misbehave: expire the access token once (42001), refuse a message as outside the 48-hour
window (45015) or with any other error code, or hold requests to look slow.

    with FakeWeChatApi(appid="wx1", secret="s") as api:
        client = WeChatApiClient("wx1", "s", api_base=api.base_url)
        ...
        api.wait_for_sent(1)
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.jsonapi import ApiCall, JsonApiFake

__all__ = ["ApiCall", "FakeWeChatApi"]


class FakeWeChatApi(JsonApiFake):
    """The fake server; start it with ``with`` (or :meth:`start`/:meth:`stop`)."""

    def __init__(self, appid: str = "wx-test-app", secret: str = "test-secret") -> None:
        super().__init__()
        self.appid = appid
        self.secret = secret
        self.sent: list[dict[str, Any]] = []  # accepted custom messages, in order
        self.templates: list[dict[str, Any]] = []  # accepted template messages, in order
        self._tokens = 0
        self._valid_token: str | None = None
        self._failures: list[tuple[int, str]] = []  # next answers of custom/send

    # -- behaviour

    def expire_token_once(self) -> None:
        """The current token is revoked: the next message is answered 42001."""
        with self._cond:
            self._valid_token = None
            self._failures.append((42001, "access_token expired"))

    def outside_window(self, times: int = 1) -> None:
        """The next *times* messages are refused with 45015 (outside the 48-hour window)."""
        self.fail_with(45015, "response out of time limit or subscription is canceled", times)

    def fail_with(self, errcode: int, errmsg: str = "error", times: int = 1) -> None:
        """The next *times* messages are refused with *errcode*."""
        with self._cond:
            self._failures.extend([(errcode, errmsg)] * times)

    # -- records

    @property
    def token_requests(self) -> int:
        """How many access tokens were requested."""
        return sum(1 for c in self.calls if c.path == "/cgi-bin/token")

    def send_calls(self) -> list[ApiCall]:
        """Every ``custom/send`` request, accepted or not."""
        with self._cond:
            return [c for c in self.calls if c.path == "/cgi-bin/message/custom/send"]

    def texts(self, openid: str | None = None) -> list[str]:
        """Text of the accepted messages (to *openid*)."""
        with self._cond:
            return [
                m["text"]["content"]
                for m in self.sent
                if openid is None or m.get("touser") == openid
            ]

    def template_calls(self) -> list[ApiCall]:
        """Every ``template/send`` request, accepted or not."""
        with self._cond:
            return [c for c in self.calls if c.path == "/cgi-bin/message/template/send"]

    def wait_for_sent(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until *count* messages were accepted (AssertionError after *timeout*)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.sent) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} messages, got {len(self.sent)}")
            return list(self.sent)

    def wait_for_calls(self, path: str, count: int, timeout: float = 5.0) -> None:
        """Block until *count* requests to *path* arrived (also while held)."""
        with self._cond:
            arrived = self._cond.wait_for(
                lambda: self.arrivals.count(path) >= count, timeout=timeout
            )
            if not arrived:
                raise AssertionError(f"expected {count} requests to {path}")

    # -- serving

    def _dispatch(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._cond:
            self.arrivals.append(parts.path)
            self._cond.notify_all()
        self._gate.wait(timeout=10)
        with self._cond:
            if parts.path == "/cgi-bin/token" and handler.command == "GET":
                answer = self._token(query)
            elif parts.path == "/cgi-bin/message/custom/send" and handler.command == "POST":
                answer = self._custom_send(query, body or {})
            elif parts.path == "/cgi-bin/message/template/send" and handler.command == "POST":
                answer = self._template_send(query, body or {})
            else:
                answer = {"errcode": 404, "errmsg": f"no such api {parts.path}"}
            self.calls.append(ApiCall(handler.command, parts.path, query, body, answer))
            self._cond.notify_all()
        self._answer(handler, answer)

    def _token(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("grant_type") != "client_credential":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        if query.get("appid") != self.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if query.get("secret") != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        self._tokens += 1
        self._valid_token = f"TOKEN-{self._tokens}"
        return {"access_token": self._valid_token, "expires_in": 7200}

    def _custom_send(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if self._failures and self._failures[0][0] == 42001:
            return self._fail()
        token = query.get("access_token")
        if token is None or token != self._valid_token:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if self._failures:
            return self._fail()
        if body.get("msgtype") != "text" or not body.get("touser"):
            return {"errcode": 40008, "errmsg": "invalid message type"}
        self.sent.append(body)
        return {"errcode": 0, "errmsg": "ok"}

    def _template_send(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if self._failures and self._failures[0][0] == 42001:
            return self._fail()
        token = query.get("access_token")
        if token is None or token != self._valid_token:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if self._failures:
            return self._fail()
        data = body.get("data")
        if not body.get("touser") or not body.get("template_id") or not isinstance(data, dict):
            return {"errcode": 47001, "errmsg": "data format error"}
        if not all(isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()):
            return {"errcode": 47003, "errmsg": "argument invalid! data.value invalid"}
        self.templates.append(body)
        return {"errcode": 0, "errmsg": "ok", "msgid": 200000 + len(self.templates)}

    def _fail(self) -> dict[str, Any]:
        code, message = self._failures.pop(0)
        return {"errcode": code, "errmsg": message}
