"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that python-telegram-bot talks to.

Point PTB's ``base_url`` at ``f"{fake.base_url}/bot"``. The fake answers the methods the bot
uses (getMe, sendMessage, editMessageReplyMarkup, answerCallbackQuery, getUpdates with long
polling, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands), checks what Telegram
checks (token, HTML entities, 4,096 characters, 64-byte callback data), makes the updates a
user would cause (a message, a reply, a button tap) and records every call and update in
order — :meth:`FakeTelegramAPI.transcript` prints that log as a readable session. It can be
told to fail: ``fail(500, times=3)``, ``fail(429, times=2, retry_after=30)``, a blocked user
(403) or an unknown chat (400).
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TOKEN", "FakeTelegramAPI", "Fault", "Record"]

TOKEN = "123456789:TEST-token_for-the-fake"
BOT_ID = 123456789

_JSON_PARAMS = frozenset(
    {
        "allowed_updates", "cache_time", "chat_id", "commands", "disable_notification",
        "drop_pending_updates", "entities", "limit", "link_preview_options", "max_connections",
        "message_id", "offset", "protect_content", "reply_markup", "reply_parameters",
        "scope", "show_alert", "timeout",
    }
)  # fmt: skip
_TAG = re.compile(
    r"<(/?)(b|strong|i|em|u|ins|s|strike|del|code|pre|a|tg-spoiler|span|blockquote)"
    r"(\s[^<>]*)?>"
)
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


@dataclass
class Record:
    """One line of the fake's log: an API call it answered, or an update it made."""

    seq: int
    kind: str  # "call" or "update"
    method: str
    params: dict[str, Any]
    status: int = 200
    result: Any = None
    error: str | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """The next *times* calls of *methods* fail with *status* (after *after* that succeed)."""

    status: int
    times: int
    methods: frozenset[str]
    retry_after: int | None = None
    description: str | None = None
    after: int = 0


class _ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


def parse_html(text: str) -> str:
    """The visible text of a message in Telegram's HTML mode; raises like Telegram does."""
    stack: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _TAG.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        closing, name = m.group(1), m.group(2)
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            raise _ApiError(400, f"Bad Request: can't parse entities: unmatched end tag </{name}>")
    out.append(text[pos:])
    if stack:
        raise _ApiError(400, f"Bad Request: can't parse entities: unclosed <{stack[-1]}>")
    plain = "".join(out)
    if "<" in plain or ">" in plain:
        raise _ApiError(400, "Bad Request: can't parse entities: unsupported start tag")
    if "&" in _ENTITY.sub("", plain):
        raise _ApiError(400, "Bad Request: can't parse entities: unescaped &")
    return html.unescape(plain)


class FakeTelegramAPI:
    """The fake server. ``with FakeTelegramAPI() as api: …`` starts and stops it."""

    def __init__(self, token: str = TOKEN, *, username: str = "yxby_test_bot") -> None:
        self.token = token
        self.bot_user = {
            "id": int(token.partition(":")[0]),
            "is_bot": True,
            "first_name": "有需必应助手",
            "username": username,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._lock = threading.Condition()
        self._log: list[Record] = []
        self._faults: list[Fault] = []
        self._blocked: set[int] = set()
        self._unknown: set[int] = set()
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_message: dict[int, int] = {}
        self._next_update = 1000
        self._next_query = 0
        self._pending: list[dict[str, Any]] = []  # updates waiting for getUpdates
        self._confirmed = 0  # getUpdates offset: updates below it are forgotten
        self._closing = False
        self.webhook: dict[str, Any] = {"url": ""}
        self.commands: list[Any] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeTelegramAPI:
        """Listen on an ephemeral port of 127.0.0.1."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._serve(self)

            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (long polls return at once)."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeTelegramAPI:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (PTB's base_url is this plus ``/bot``)."""
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------------- behaviour

    def fail(
        self,
        status: int,
        times: int,
        *,
        methods: tuple[str, ...] = ("sendMessage",),
        retry_after: int | None = None,
        description: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next *times* calls of *methods* with *status* (429: with retry_after).

        With *after*, that many calls succeed first (a failure in the middle of a
        multi-part message).
        """
        with self._lock:
            self._faults.append(
                Fault(status, times, frozenset(methods), retry_after, description, after)
            )

    def block(self, chat_id: int) -> None:
        """The user of *chat_id* blocked the bot: sending to it is 403 Forbidden."""
        with self._lock:
            self._blocked.add(chat_id)

    def forget_chat(self, chat_id: int) -> None:
        """Telegram does not know *chat_id*: sending to it is 400 chat not found."""
        with self._lock:
            self._unknown.add(chat_id)

    # --------------------------------------------------------------------- updates

    def user_message(
        self,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        first_name: str = "王经理",
    ) -> dict[str, Any]:
        """The update Telegram sends when *chat_id* writes *text* (optionally as a reply)."""
        with self._lock:
            message: dict[str, Any] = {
                "message_id": self._message_id(chat_id),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": first_name},
                "from": {"id": chat_id, "is_bot": False, "first_name": first_name},
                "text": text,
            }
            if text.startswith("/"):
                command = text.split()[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
            if reply_to is not None:
                message["reply_to_message"] = self._messages[(chat_id, reply_to)]
            update = {"update_id": self._update_id(), "message": message}
            self._record(
                "update", "message", {"chat_id": chat_id, "text": text, "reply_to": reply_to}
            )
            return update

    def button_tap(
        self, chat_id: int, data: str, *, message_id: int | None = None, first_name: str = "王经理"
    ) -> dict[str, Any]:
        """The update of tapping the button with *data* (on the newest message that has it)."""
        with self._lock:
            if message_id is None:
                message_id = self._message_with_button(chat_id, data)
            message = self._messages[(chat_id, message_id)]
            self._next_query += 1
            query = {
                "id": f"q{self._next_query}",
                "from": {"id": chat_id, "is_bot": False, "first_name": first_name},
                "chat_instance": f"ci{chat_id}",
                "data": data,
                "message": message,
            }
            update = {"update_id": self._update_id(), "callback_query": query}
            label = self._label(message, data)
            self._record(
                "update", "callback_query", {"chat_id": chat_id, "data": data, "label": label}
            )
            return update

    def push_update(self, update: dict[str, Any]) -> None:
        """Hand *update* to the next getUpdates (polling)."""
        with self._lock:
            self._pending.append(update)
            self._lock.notify_all()

    def redeliver(self, update: dict[str, Any]) -> None:
        """Send *update* again through getUpdates, as Telegram does after a lost confirmation."""
        with self._lock:
            self._pending.append({**update, "_force": True})
            self._record("update", "redelivery", {"update_id": update["update_id"]})
            self._lock.notify_all()

    # ------------------------------------------------------------------- recording

    def records(self) -> list[Record]:
        """Everything, in order."""
        with self._lock:
            return list(self._log)

    def calls(self, method: str | None = None) -> list[Record]:
        """API calls (of *method*), in order."""
        return [r for r in self.records() if r.kind == "call" and method in (None, r.method)]

    def messages(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot got through (sendMessage answered 200), in order."""
        return [
            r.result
            for r in self.calls("sendMessage")
            if r.status == 200 and (chat_id is None or r.result["chat"]["id"] == chat_id)
        ]

    def texts(self, chat_id: int) -> list[str]:
        """The visible text of the messages *chat_id* received."""
        return [m["text"] for m in self.messages(chat_id)]

    def buttons(self, message: dict[str, Any]) -> list[tuple[str, str]]:
        """``(label, callback_data)`` of *message*'s inline keyboard."""
        markup = message.get("reply_markup") or {}
        return [
            (b["text"], b["callback_data"])
            for row in markup.get("inline_keyboard", [])
            for b in row
        ]

    def transcript(self, width: int = 70) -> str:
        """The log as a readable session."""
        lines = []
        for r in self.records():
            if r.kind == "update":
                what = r.params.get("text") or r.params.get("label") or r.params.get("data") or ""
                who = r.params.get("chat_id", "")
                extra = f" (回复 #{r.params['reply_to']})" if r.params.get("reply_to") else ""
                if r.method == "redelivery":
                    lines.append(f"{r.seq:03d} ⟲ Telegram 重发 update {r.params['update_id']}")
                    continue
                tap = "点按 " if r.method == "callback_query" else ""
                lines.append(f"{r.seq:03d} ← 用户 {who}{extra}: {tap}{_short(str(what), width)}")
                continue
            if r.method == "sendMessage":
                chat = r.params.get("chat_id")
                if r.status == 200:
                    keys = " ".join(f"[{label}]" for label, _ in self.buttons(r.result))
                    text = _short(r.result["text"], width)
                    lines.append(
                        f"{r.seq:03d} → {chat} #{r.result['message_id']}: {text} {keys}".rstrip()
                    )
                else:
                    lines.append(f"{r.seq:03d} ✗ sendMessage {chat}: {r.status} {r.error}")
            elif r.method != "getUpdates" or r.result:
                status = "" if r.status == 200 else f" {r.status} {r.error}"
                lines.append(f"{r.seq:03d} · {r.method}{status}")
        return "\n".join(lines)

    # -------------------------------------------------------------------- internals

    def _record(self, kind: str, method: str, params: dict[str, Any], **kw: Any) -> Record:
        record = Record(len(self._log) + 1, kind, method, params, **kw)
        self._log.append(record)
        return record

    def _update_id(self) -> int:
        self._next_update += 1
        return self._next_update

    def _message_id(self, chat_id: int) -> int:
        self._next_message[chat_id] = self._next_message.get(chat_id, 0) + 1
        return self._next_message[chat_id]

    def _message_with_button(self, chat_id: int, data: str) -> int:
        for (chat, message_id), message in sorted(self._messages.items(), reverse=True):
            if chat == chat_id and any(d == data for _, d in self.buttons(message)):
                return message_id
        raise AssertionError(f"chat {chat_id} has no message with a button {data!r}")

    def _label(self, message: dict[str, Any], data: str) -> str:
        return next((label for label, d in self.buttons(message) if d == data), data)

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", parsed.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        params = _params(parsed.query, body, request.headers.get("Content-Type", ""))
        method = match.group(2) if match else parsed.path
        status, payload = 200, None
        try:
            if match is None or match.group(1) != self.token:
                raise _ApiError(401, "Unauthorized")
            result = self._call(method, params)
            payload = {"ok": True, "result": result}
        except _ApiError as exc:
            status = exc.status
            payload = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.retry_after is not None:
                payload["parameters"] = {"retry_after": exc.retry_after}
        data = json.dumps(payload, ensure_ascii=False).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a cancelled long poll
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getUpdates":
            return self._get_updates(params)
        with self._lock:
            try:
                self._inject_fault(method)
                result = self._answer(method, params)
            except _ApiError as exc:
                self._record("call", method, params, status=exc.status, error=exc.description)
                raise
            self._record("call", method, params, result=result)
            return result

    def _inject_fault(self, method: str) -> None:
        for fault in self._faults:
            if fault.times > 0 and method in fault.methods:
                if fault.after > 0:
                    fault.after -= 1
                    return
                fault.times -= 1
                if fault.status == 429:
                    after = fault.retry_after or 1
                    text = fault.description or f"Too Many Requests: retry after {after}"
                    raise _ApiError(429, text, after)
                raise _ApiError(
                    fault.status, fault.description or _REASONS.get(fault.status, "Error")
                )

    def _answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return self.bot_user
        if method == "sendMessage":
            return self._send_message(params)
        if method == "editMessageReplyMarkup":
            key = (int(params["chat_id"]), int(params["message_id"]))
            if key not in self._messages:
                raise _ApiError(400, "Bad Request: message to edit not found")
            message = dict(self._messages[key])
            markup = params.get("reply_markup")
            if markup and markup.get("inline_keyboard"):
                message["reply_markup"] = markup
            else:
                message.pop("reply_markup", None)
            self._messages[key] = message
            return message
        if method == "answerCallbackQuery":
            return True
        if method == "setWebhook":
            self.webhook = {
                "url": params.get("url", ""),
                "secret_token": params.get("secret_token"),
            }
            return True
        if method == "deleteWebhook":
            self.webhook = {"url": ""}
            if params.get("drop_pending_updates"):
                self._pending.clear()
            return True
        if method == "getWebhookInfo":
            return {
                "url": self.webhook["url"],
                "has_custom_certificate": False,
                "pending_update_count": 0,
            }
        if method == "setMyCommands":
            self.commands = list(params.get("commands") or [])
            return True
        raise _ApiError(404, "Not Found: method not found")

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if chat_id in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id in self._unknown:
            raise _ApiError(400, "Bad Request: chat not found")
        raw = str(params.get("text", ""))
        text = parse_html(raw) if params.get("parse_mode") == "HTML" else raw
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        message: dict[str, Any] = {
            "message_id": self._message_id(chat_id),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self.bot_user,
            "text": text,
        }
        markup = params.get("reply_markup")
        if markup:
            for row in markup.get("inline_keyboard", []):
                for button in row:
                    if not 1 <= len(str(button.get("callback_data", "")).encode()) <= 64:
                        raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            message["reply_markup"] = markup
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        wait = min(float(params.get("timeout") or 0), 10.0)
        deadline = time.monotonic() + wait
        with self._lock:
            try:
                self._inject_fault("getUpdates")
            except _ApiError as exc:
                self._record("call", "getUpdates", params, status=exc.status, error=exc.description)
                raise
            if offset:
                self._confirmed = max(self._confirmed, offset)
            while True:
                ready = [
                    u for u in self._pending if u.get("_force") or u["update_id"] >= self._confirmed
                ]
                if ready or self._closing or time.monotonic() >= deadline:
                    break
                self._lock.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._pending = [
                u for u in self._pending if u not in ready and u["update_id"] >= self._confirmed
            ]
            result = [{k: v for k, v in u.items() if k != "_force"} for u in ready]
            self._record("call", "getUpdates", params, result=result)
            return result


_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def _short(text: str, width: int) -> str:
    flat = text.replace("\n", " ⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    raw: dict[str, Any] = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    if body:
        if "json" in content_type:
            raw.update(json.loads(body))
        else:
            raw.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()})
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _JSON_PARAMS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        params[key] = value
    return params
