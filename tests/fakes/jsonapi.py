"""The plumbing the fake WeChat and WeCom APIs share: a JSON HTTP server on 127.0.0.1.

A subclass answers requests in ``_dispatch(handler, body)`` (body: the parsed JSON of a POST,
``None`` for a GET) and writes its answer with :meth:`JsonApiFake._answer`; it records calls
under ``self._cond`` and may hold answers with :meth:`hold` / :meth:`release`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["ApiCall", "JsonApiFake"]


@dataclass(frozen=True)
class ApiCall:
    """One request the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    answer: dict[str, Any] = field(default_factory=dict)


class JsonApiFake:
    """Lifecycle, holding and JSON answers of a fake API; start it with ``with``."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.arrivals: list[str] = []  # paths of requests as they arrive (before answers)
        self._gate = threading.Event()
        self._gate.set()
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _dispatch(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        raise NotImplementedError

    # -- lifecycle

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._dispatch(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode()) if raw else {}
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                fake._dispatch(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held requests and shut the server down."""
        self._gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (what the channel's API base is set to)."""
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- behaviour

    def hold(self) -> None:
        """Answer nothing until :meth:`release` (a slow API; bounded at 10 s per request)."""
        self._gate.clear()

    def release(self) -> None:
        """Answer held requests."""
        self._gate.set()

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, answer: dict[str, Any]) -> None:
        data = json.dumps(answer, ensure_ascii=False).encode()
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (a timeout test)
            pass
