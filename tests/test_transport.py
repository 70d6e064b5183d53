"""Every accepted connection has Nagle's algorithm off, whatever socket uvicorn listens on.

uvicorn's workers listen on a socket made with protocol number 0, on which asyncio leaves
Nagle on: the body of each response then waited for the client's delayed ACK (40 ms).
``LiveServer`` listens on such a socket, as the workers do.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.transport import HTTP_PROTOCOL, NoDelayHTTPProtocol
from tests.servers import LiveServer


def _hello(_: Any) -> PlainTextResponse:
    return PlainTextResponse("你好")


def _nodelay_of_connections(live: LiveServer) -> list[int]:
    found = []
    for protocol in live.server.server_state.connections:
        sock = protocol.transport.get_extra_info("socket")
        found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return found


def test_connections_to_a_protocol_0_listening_socket_send_without_delay() -> None:
    app = Starlette(routes=[Route("/", _hello)])
    with LiveServer(app) as live, httpx.Client(base_url=live.url) as http:
        assert live.sock.proto == 0  # as uvicorn's workers' socket: asyncio sets nothing
        assert http.get("/").text == "你好"  # the connection stays open (keep-alive)
        assert _nodelay_of_connections(live) == [1]
        assert isinstance(live.server.server_state.connections.copy().pop(), NoDelayHTTPProtocol)


def test_the_premise_an_accepted_socket_of_protocol_0_keeps_nagle_on() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == 0
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def test_serve_runs_uvicorn_with_the_protocol(monkeypatch: Any, db_url: str, backend: str) -> None:
    import uvicorn
    from click.testing import CliRunner

    from bot.cli import main

    seen: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.append((k.get("workers"), k["http"])))
    monkeypatch.setenv("YXBY_DATABASE_URL", db_url)
    from bot.metrics import MULTIPROC_ENV
    from bot.server import SERVE_OPTIONS_ENV

    for name in (MULTIPROC_ENV, SERVE_OPTIONS_ENV):  # what the workers' parent sets
        monkeypatch.setenv(name, "")
    # one process on SQLite; on PostgreSQL the worker processes (each loads the class)
    args = ["serve", "--port", "1"] + (["--workers", "2"] if backend == "postgresql" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert seen == [(2 if backend == "postgresql" else None, HTTP_PROTOCOL)]
    assert not os.environ.get(MULTIPROC_ENV)  # not left naming a removed directory
