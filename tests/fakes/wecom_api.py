"""A fake WeCom (企业微信) API: a real HTTP server on 127.0.0.1, in a thread, recording calls.

It serves what application messages need — ``GET /cgi-bin/gettoken`` and
``POST /cgi-bin/message/send`` — with WeCom's JSON answers, and can be told to misbehave:
expire the access token once (42001), refuse the next messages with any error code, drop
connections without answering (a network fault), or hold requests to look slow. Members
outside *users* (when given) are refused with 81013, or — ``lenient=True`` — accepted with
``invaliduser`` naming them, as WeCom does when only some recipients are unknown.

    with FakeWeComApi(corp_id="ww1", secret="s", agent_id=1000002) as api:
        client = WeComApiClient("ww1", "s", api_base=api.base_url)
        ...
        api.wait_for_sent(1)
"""

from __future__ import annotations

from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.jsonapi import ApiCall, JsonApiFake

__all__ = ["ApiCall", "FakeWeComApi"]

TOKEN_PATH = "/cgi-bin/gettoken"
SEND_PATH = "/cgi-bin/message/send"


class FakeWeComApi(JsonApiFake):
    """The fake server; start it with ``with`` (or :meth:`start`/:meth:`stop`)."""

    def __init__(
        self,
        corp_id: str = "ww-test-corp",
        secret: str = "test-secret",
        agent_id: int = 1000002,
        *,
        users: Iterable[str] | None = None,
        lenient: bool = False,
    ) -> None:
        super().__init__()
        self.corp_id = corp_id
        self.secret = secret
        self.agent_id = agent_id
        self.users = set(users) if users is not None else None
        self.lenient = lenient
        self.sent: list[dict[str, Any]] = []  # accepted messages, in order
        self._tokens = 0
        self._valid_token: str | None = None
        self._expired: str | None = None
        self._failures: list[tuple[int, str]] = []  # next answers of message/send
        self._drops = 0

    # -- behaviour

    def expire_token_once(self) -> None:
        """The current token expires: the next message with it is answered 42001."""
        with self._cond:
            self._expired, self._valid_token = self._valid_token, None

    def fail_with(self, errcode: int, errmsg: str = "error", times: int = 1) -> None:
        """The next *times* messages (with a valid token) are refused with *errcode*."""
        with self._cond:
            self._failures.extend([(errcode, errmsg)] * times)

    def drop_connections(self, times: int = 1) -> None:
        """The next *times* requests get no answer: the connection is closed at once."""
        with self._cond:
            self._drops += times

    # -- records

    @property
    def token_requests(self) -> int:
        """How many access tokens were requested (answered, successfully or not)."""
        with self._cond:
            return sum(1 for c in self.calls if c.path == TOKEN_PATH)

    def send_calls(self) -> list[ApiCall]:
        """Every answered ``message/send`` request, accepted or not."""
        with self._cond:
            return [c for c in self.calls if c.path == SEND_PATH]

    def cards(self, user: str | None = None) -> list[dict[str, Any]]:
        """The ``textcard`` part of accepted text cards (to *user*)."""
        return [m["textcard"] for m in self._accepted("textcard", user)]

    def texts(self, user: str | None = None) -> list[str]:
        """Content of accepted text messages (to *user*)."""
        return [m["text"]["content"] for m in self._accepted("text", user)]

    def _accepted(self, msgtype: str, user: str | None) -> list[dict[str, Any]]:
        with self._cond:
            return [
                m
                for m in self.sent
                if m["msgtype"] == msgtype and (user is None or user in m["touser"].split("|"))
            ]

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
            if self._drops:
                self._drops -= 1
                handler.close_connection = True
                return  # nothing written: the client sees the connection closed
        self._gate.wait(timeout=10)
        with self._cond:
            if parts.path == TOKEN_PATH and handler.command == "GET":
                answer = self._token(query)
            elif parts.path == SEND_PATH and handler.command == "POST":
                answer = self._send(query, body or {})
            else:
                answer = {"errcode": 404, "errmsg": f"no such api {parts.path}"}
            self.calls.append(ApiCall(handler.command, parts.path, query, body, answer))
            self._cond.notify_all()
        self._answer(handler, answer)

    def _token(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("corpid") != self.corp_id:
            return {"errcode": 40013, "errmsg": "invalid corpid"}
        if query.get("corpsecret") != self.secret:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        self._tokens += 1
        self._valid_token = f"TOKEN-{self._tokens}"
        return {"errcode": 0, "errmsg": "ok", "access_token": self._valid_token, "expires_in": 7200}

    def _send(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        token = query.get("access_token")
        if token is not None and token == self._expired:
            self._expired = None
            return {"errcode": 42001, "errmsg": "access_token expired"}
        if token is None or token != self._valid_token:
            return {"errcode": 40014, "errmsg": "invalid access_token"}
        if self._failures:
            code, message = self._failures.pop(0)
            return {"errcode": code, "errmsg": message}
        if body.get("agentid") != self.agent_id:
            return {"errcode": 40056, "errmsg": "invalid agentid"}
        problem = _malformed(body)
        if problem is not None:
            return problem
        users = [u for u in str(body.get("touser") or "").split("|") if u]
        unknown = [u for u in users if self.users is not None and u not in self.users]
        if not users or (unknown and (len(unknown) == len(users)) and not self.lenient):
            return {"errcode": 81013, "errmsg": "user & party & tag all invalid"}
        self.sent.append(body)
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": f"msg-{len(self.sent)}"}
        if unknown:
            answer["invaliduser"] = "|".join(unknown)
        return answer


def _malformed(body: dict[str, Any]) -> dict[str, Any] | None:
    """WeCom's answer to a message it cannot take, or ``None``."""
    kind = body.get("msgtype")
    if kind == "text":
        content = (body.get("text") or {}).get("content") or ""
        if not content:
            return {"errcode": 44004, "errmsg": "empty content"}
        if len(content.encode()) > 2048:
            return {"errcode": 45002, "errmsg": "content size out of limit"}
        return None
    if kind == "textcard":
        card = body.get("textcard") or {}
        for key in ("title", "description", "url"):
            if not card.get(key):
                return {"errcode": 44004, "errmsg": f"empty textcard.{key}"}
        return None
    return {"errcode": 40008, "errmsg": "invalid message type"}
